CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  email TEXT,
  name TEXT,
  plan TEXT,
  company TEXT,
  created_at TEXT
);
INSERT INTO users VALUES
  (1, 'ada@example.com', 'Ada Lovelace', 'pro', 'Analytical Engines', '2024-03-01 09:15:00'),
  (2, 'alan@example.com', 'Alan Turing', 'free', 'Bletchley', '2024-03-02 11:00:00'),
  (3, 'grace@example.com', 'Grace Hopper', 'team', 'Navy', '2024-03-05 16:40:00'),
  (4, 'edsger@example.com', 'Edsger Dijkstra', 'free', NULL, '2024-04-10 08:05:00'),
  (5, 'barbara@example.com', 'Barbara Liskov', 'pro', 'MIT', '2024-04-12 13:30:00');
