-- The example's warehouse: an SQLite file created by retl on the first run
-- (Source spec.sqlite.seedFile).
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL,
  name TEXT NOT NULL,
  plan TEXT NOT NULL,
  mrr NUMERIC NOT NULL,
  created_at TEXT NOT NULL,
  attrs TEXT NOT NULL   -- JSON object
);
INSERT INTO users VALUES
 (1, 'ada@example.com',     'Ada Lovelace',      'pro',        49.00,  '2024-01-05 10:00:00', '{"company":"Analytical Engines","seats":5}'),
 (2, 'grace@example.com',   'Grace Hopper',      'enterprise', 990.00, '2024-02-11 08:30:00', '{"company":"Navy","seats":120}'),
 (3, 'alan@example.com',    'Alan Turing',       'free',       0.00,   '2024-03-01 12:00:00', '{"company":"Bletchley"}'),
 (4, 'katherine@example.com','Katherine Johnson','pro',        49.00,  '2024-03-15 16:45:00', '{"company":"NASA","seats":12}'),
 (5, 'edsger@example.com',  'Edsger Dijkstra',   'team',       99.50,  '2024-04-02 09:15:00', '{"company":"THE"}');
