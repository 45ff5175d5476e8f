"""``python -m rl_saliency.cli``: the same as the ``rl-saliency`` command."""

from rl_saliency.cli import main

raise SystemExit(main())
