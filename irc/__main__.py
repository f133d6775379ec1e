"""`python -m irc ...`: the same as the `irc` console script (irc.cli.main)."""

from irc.cli import main

raise SystemExit(main())
