"""The PostgreSQL adapter: SQL files, migrations, the job store and the listener."""
