-- The demo warehouse: created by retl on the first run (Source spec.sqlite.seedFile).
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  email TEXT,
  name TEXT NOT NULL,
  plan TEXT NOT NULL,
  mrr NUMERIC NOT NULL,
  created_at TEXT NOT NULL,
  attrs TEXT NOT NULL,   -- JSON object
  orders TEXT NOT NULL   -- JSON array of objects
);
INSERT INTO users VALUES
 (1, 'ada@example.com',     'Ada Lovelace',     'pro',        49.00, '2024-01-05 10:00:00', '{"company":"Analytical Engines","industry":"computing"}', '[{"sku":"A-1","quantity":2,"price":10.5},{"sku":"B-2","quantity":1}]'),
 (2, 'grace@example.com',   'Grace Hopper',     'enterprise', 990.00, '2024-02-11 08:30:00', '{"company":"Navy","industry":"defense","size":5000}', '[{"sku":"C-3","quantity":10,"price":1.25}]'),
 (3, 'alan@example.com',    'Alan Turing',      'free',        0.00, '2024-03-01 12:00:00', '{"company":"Bletchley","industry":"research"}', '[]'),
 (4, NULL,                  'Katherine Johnson','pro',        49.00, '2024-03-15 16:45:00', '{"company":"NASA","industry":"space"}', '[{"sku":"A-1","quantity":1,"price":10.5}]'),
 (5, 'edsger@example.com',  'Edsger Dijkstra',  'pro',        49.00, '2024-04-02 09:15:00', '{"company":"TU Eindhoven"}', '[{"sku":"D-4","quantity":3,"price":7}]'),
 (6, 'barbara@example.com', 'Barbara Liskov',   'enterprise', 1200.00, '2024-05-20 14:00:00', '{"company":"MIT","industry":"education","size":12000}', '[]'),
 (7, 'linus@example.com',   'Linus Torvalds',   'free',        0.00, '2024-06-01 07:00:00', '{"company":"Linux Foundation","industry":"software","internal_note":"do not contact"}', '[{"sku":"E-5","quantity":1,"price":99}]'),
 (8, 'margaret@example.com','Margaret Hamilton','pro',        49.00, '2024-06-18 11:30:00', '{"company":"Hamilton Technologies","industry":"software"}', '[{"sku":"A-1","quantity":5,"price":10.5}]'),
 (9, 'donald@example.com',  'Donald Knuth',     'free',        0.00, '2024-07-07 17:00:00', '{"company":"Stanford","industry":"education"}', '[{"sku":"F-6","quantity":1}]'),
 (10,'frances@example.com', 'Frances Allen',    'enterprise', 800.00, '2024-08-09 10:10:00', '{"company":"IBM","industry":"computing","size":300000}', '[{"sku":"C-3","quantity":4,"price":1.25},{"sku":"G-7","quantity":2,"price":3}]');
