"""`python -m irc ...`: the same as the `irc` console script. Imports only irc.cli."""

from irc.cli import main

raise SystemExit(main())
