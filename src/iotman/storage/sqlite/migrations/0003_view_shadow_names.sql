-- iotman SQLite schema, version 3: rebuild shadow rows are now named "<view> rebuild".
-- Rows of a rebuild that a stop interrupted under the old name ("<view>" NUL "rebuild")
-- are never read again: drop them.
DELETE FROM view_rows WHERE instr(view, char(0)) > 0;
