from wsreid.cli import entry

entry()
