"""The published protocol of a daemon: the wire format of the stream, the control contract and client,
the default endpoints, CURVE keys on the client side (``security``). This is the only part of ``edge``
that clients (``host``) import.
"""
