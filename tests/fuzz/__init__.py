"""jitprov's coverage-guided fuzzing campaign (`make fuzz`, docs/testing.md).

One module per target (`saml`, `oidc`, `rules`, `sample`, `case`), each with a
`check(data)` function that runs one input through jitprov and raises `Finding` when
an invariant breaks. `check` needs nothing but jitprov and its dev tools, so
`test_regressions.py` replays saved findings under plain pytest; only the fuzzing
itself (`python -m tests.fuzz`, which runs `tests.fuzz.child` once per target in its
own process) needs atheris.

Nothing in this package imports `engine` or `rules` at import time except the target
modules: the child process imports those under atheris' coverage instrumentation.
"""
