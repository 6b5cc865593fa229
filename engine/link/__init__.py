"""The wire between the extension and the engine process: the framed protocol, the client and
the launcher that starts a local engine. Torch-free: the Blender extension imports it."""
