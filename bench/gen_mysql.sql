-- Deterministic W2m source table in MariaDB: W2's table (bench/gen_pg.sql) with MariaDB types;
-- every value is a pure function of id (no RNG). Rows come from the Sequence engine.
-- Run: sed 's/@NROWS@/5000000/' bench/gen_mysql.sql | mariadb -uroot -h127.0.0.1
DROP DATABASE IF EXISTS b_src;
CREATE DATABASE b_src;
USE b_src;
CREATE TABLE b_src.bench_rows (
  id          BIGINT PRIMARY KEY,
  int_col     INT,
  short_text  TEXT,                 -- NULL every 10th row
  long_text   TEXT,                 -- ~100 chars
  dbl         DOUBLE,               -- NULL every 13th row
  amount      DECIMAL(12,2),
  flag        BOOLEAN,
  created_at  DATETIME(6),
  day         DATE,
  payload     JSON,                 -- small object, NULL every 17th row
  uid         CHAR(36),
  category    VARCHAR(20)
) ENGINE=InnoDB;
SET SESSION unique_checks = 0;
INSERT INTO b_src.bench_rows
SELECT seq,
       (seq * 7919) % 1000003,
       IF(seq % 10 = 0, NULL, CONCAT('name_', seq % 1000)),
       CONCAT(MD5(seq), ' ', MD5(seq + 1), ' ', SUBSTR(MD5(seq + 2), 1, 34)),
       IF(seq % 13 = 0, NULL, ((seq * 37) % 100003) / 7.0),
       ((seq * 31) % 100000000) / 100.0,
       seq % 3 = 0,
       TIMESTAMPADD(SECOND, seq * 17, '2020-01-01 00:00:00'),
       DATE_ADD('2000-01-01', INTERVAL seq % 9000 DAY),
       IF(seq % 17 = 0, NULL, JSON_OBJECT('a', seq % 100, 'b', CONCAT('x', seq % 7), 'c', JSON_ARRAY(seq % 5, seq % 11))),
       CONCAT_WS('-', SUBSTR(MD5(CONCAT('u', seq)), 1, 8), SUBSTR(MD5(CONCAT('u', seq)), 9, 4),
                 SUBSTR(MD5(CONCAT('u', seq)), 13, 4), SUBSTR(MD5(CONCAT('u', seq)), 17, 4),
                 SUBSTR(MD5(CONCAT('u', seq)), 21, 12)),
       ELT(1 + seq % 5, 'alpha', 'beta', 'gamma', 'delta', 'epsilon')
FROM seq_1_to_@NROWS@;
ANALYZE TABLE b_src.bench_rows;
SELECT count(*) AS `rows` FROM b_src.bench_rows;
