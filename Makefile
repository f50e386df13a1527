# Shortcuts for the scripts the README uses (make is optional; the scripts need only bash).
.PHONY: setup serve test lint benchmark

setup:
	bash scripts/setup.sh

serve:
	bash scripts/serve.sh

test:
	bash scripts/test.sh

lint:
	bash scripts/setup.sh && .venv/bin/ruff check app training tests && .venv/bin/ruff format --check app training tests

benchmark:
	bash scripts/setup.sh && .venv/bin/python benchmarks/run.py
