"""The embedded dispatch server: a real `MicrogridDispatchService` with SQLite storage."""
