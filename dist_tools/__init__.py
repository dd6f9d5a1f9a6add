"""Party Pool packaging: the packages a server operator hands to users.

``python -m dist_tools`` (console script ``partypool-dist``) builds, for one
server, a chat-client package and/or a root (administrator) package, each as a
one-file executable for the system it runs on (PyInstaller) and/or a ZIP of the
client source with setup scripts. Every package carries the server's invite
(:mod:`partypool.invite`), sealed with the chat passkey. See
docs/distribution.md.
"""
