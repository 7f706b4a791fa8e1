"""Catching up from Nova on deletions the message bus lost, and verifying the ones it carried."""
