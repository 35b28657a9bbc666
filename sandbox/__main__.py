"""`python -m sandbox`: the `walletpos-sandbox` command."""

from .cli import main

raise SystemExit(main())
