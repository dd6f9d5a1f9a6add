"""Front doors: one module per way in (the v1 chat port today), each a thin
adapter that frames lines and carries them to and from `partypool.room`."""
