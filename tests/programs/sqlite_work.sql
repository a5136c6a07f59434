-- tests/programs/sqlite_work.sql - a million rows into an in-memory SQLite
-- database (so every page lives in malloc'd memory), two indexes, sorts,
-- joins, aggregates, updates and deletes. run.sh runs it with the sqlite3
-- shell on the system allocator and under LD_PRELOAD and requires the two
-- outputs to be identical. Everything here is deterministic.
.bail on
.headers off
.mode list

PRAGMA cache_size = -262144;

CREATE TABLE t (
    id INTEGER PRIMARY KEY,
    grp INTEGER NOT NULL,
    name TEXT NOT NULL,
    val REAL NOT NULL,
    pad BLOB
);

WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000)
INSERT INTO t (id, grp, name, val, pad)
SELECT x,
       (x * 7919) % 1009,
       printf('name-%07d-%x', (x * 104729) % 1000003, x * 31),
       (x % 977) * 0.25,
       CASE WHEN x % 10 = 0 THEN zeroblob(x % 300) ELSE NULL END
FROM n;

CREATE INDEX t_grp ON t (grp, val);
CREATE INDEX t_name ON t (name);

SELECT 'rows', count(*), sum(grp), total(val), min(name), max(name), sum(length(pad)) FROM t;
SELECT 'distinct', count(DISTINCT grp), count(DISTINCT val) FROM t;
SELECT 'groups', grp, count(*), total(val), max(length(name)) FROM t
    GROUP BY grp ORDER BY grp LIMIT 5 OFFSET 500;
SELECT 'top', name FROM t ORDER BY name DESC LIMIT 3;
SELECT 'sorted', sum(length(name)), count(*) FROM (SELECT name FROM t WHERE grp < 200 ORDER BY val DESC, name LIMIT 100000);
SELECT 'join', count(*), total(a.val + b.val) FROM t AS a JOIN t AS b ON b.id = a.grp + 1 WHERE a.val > 200;
SELECT 'concat', length(group_concat(name, ',')) FROM (SELECT name FROM t WHERE grp = 7 ORDER BY id);

UPDATE t SET val = val + 1, name = name || '-u' WHERE grp % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
CREATE TABLE g AS SELECT grp, count(*) AS c, total(val) AS v FROM t GROUP BY grp;

SELECT 'after', count(*), total(val), sum(length(name)) FROM t;
SELECT 'g', count(*), sum(c), total(v) FROM g;
SELECT 'window', sum(r) FROM (SELECT row_number() OVER (PARTITION BY grp ORDER BY val, id) AS r FROM t WHERE grp < 50);
SELECT 'integrity', * FROM pragma_integrity_check;
