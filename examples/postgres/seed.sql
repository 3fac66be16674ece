-- The example's warehouse table. Run it once:
--   psql postgres://postgres@127.0.0.1:5432/test -f examples/postgres/seed.sql
DROP SCHEMA IF EXISTS retl_example CASCADE;
CREATE SCHEMA retl_example;
CREATE TABLE retl_example.users (
  id         bigint PRIMARY KEY,
  email      text,
  name       text NOT NULL,
  plan       text NOT NULL,
  mrr        numeric(12, 2) NOT NULL,
  created_at timestamptz NOT NULL,
  attrs      jsonb NOT NULL DEFAULT '{}'
);
INSERT INTO retl_example.users VALUES
  (1, 'ada@example.com',     'Ada Lovelace',     'pro',        49.00,  '2024-01-05 09:30:00+00', '{"company": "Analytical Engines", "seats": 5}'),
  (2, 'grace@example.com',   'Grace Hopper',     'enterprise', 499.99, '2024-02-11 14:00:00+00', '{"company": "COBOL Inc", "seats": 120}'),
  (3, 'alan@example.com',    'Alan Turing',      'free',       0,      '2024-03-01 08:15:00+00', '{"company": "Bletchley", "seats": 1}'),
  (4, 'katherine@example.com','Katherine Johnson','pro',       49.00,  '2024-03-15 16:45:00+00', '{"company": "NASA", "seats": 12}'),
  (5, 'edsger@example.com',  'Edsger Dijkstra',  'team',       99.50,  '2024-04-20 11:00:00+00', '{"company": "THE", "seats": 8}');
