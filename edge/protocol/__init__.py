"""The published protocol of a daemon: the wire format of the stream, the control contract and client,
the default endpoints. This is the only part of ``edge`` that clients (``host``) import.
"""
