"""Local identity providers to sign in against while developing and testing jitprov."""
