"""The root side: the admin command executor and the SSH shell that serves it."""
