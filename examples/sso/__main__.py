"""`python -m examples.sso` (`make demo-sso`): start the SSO demo and wait for Ctrl-C.

The workspace is a temporary folder, removed at the end, or DEMO_DIR (kept). Ports:
APP_PORT (5000), SERVE_PORT (8000), IDP_PORT (8090), OP_PORT (8091); 0 picks free ones.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from examples.sso.stack import running


def main() -> int:
    kept = os.environ.get("DEMO_DIR")
    scratch = None if kept else tempfile.TemporaryDirectory(prefix="jitprov-sso-demo-")
    root = Path(kept) if kept else Path(scratch.name) / "workspace"  # type: ignore[union-attr]
    ports = {
        name: int(os.environ.get(var, default))
        for name, var, default in (
            ("app_port", "APP_PORT", 5000),
            ("serve_port", "SERVE_PORT", 8000),
            ("idp_port", "IDP_PORT", 8090),
            ("op_port", "OP_PORT", 8091),
        )
    }
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with running(root, **ports) as stack:
            print(
                f"""jitprov SSO demo — workspace {stack.root}

  the application      {stack.app_url}/        (sign in as alice/alice or bob/bob)
  jitprov serve        {stack.serve_url}       (log: {stack.log})
  SAML IdP             {stack.saml_idp_url}/metadata
  OpenID Provider      {stack.oidc_url}/.well-known/openid-configuration
  IdP-initiated SAML   {stack.idp_initiated_url()}

The accounts jitprov creates: jitprov --config {stack.config} users
Ctrl-C stops everything.""",
                flush=True,
            )
            try:
                stop.wait()
            except KeyboardInterrupt:
                pass
    except OSError as exc:
        print(f"the demo could not start: {exc} (a port in use? set APP_PORT=0 ...)", file=sys.stderr)
        return 1
    finally:
        if scratch is not None:
            scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
