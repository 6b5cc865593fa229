"""The engine server the extension talks to: the socket server, its command table, and the
session that holds one scene, its training and its features."""
