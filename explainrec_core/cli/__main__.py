"""`python -m explainrec_core.cli` (what `accelerate launch ... -m explainrec_core.cli run STEP` runs)."""

from explainrec_core.cli.main import app

app()
