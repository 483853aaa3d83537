"""`make demo-sso`: single sign-on with JIT provisioning, clicked through in a browser."""
