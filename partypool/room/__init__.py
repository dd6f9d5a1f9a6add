"""The door-neutral core: the room, its sessions and their rules, logins and
the store.  Nothing here knows a socket or a wire format's framing; every
front door (`partypool.doors`) and the admin side (`partypool.admin`) drive it."""
