# Shortcuts for the scripts the README uses (make is optional; the scripts need only bash).
.PHONY: setup serve test lint benchmark container-test kserve-validate

setup:
	bash scripts/setup.sh dev

serve:
	bash scripts/serve.sh

test:
	bash scripts/test.sh

lint:
	bash scripts/setup.sh dev && .venv/bin/ruff check app modelstore training tests benchmarks tools && .venv/bin/ruff format --check app modelstore training tests benchmarks tools

benchmark:
	bash scripts/setup.sh dev && .venv/bin/python benchmarks/run.py

container-test:
	bash scripts/container-test.sh

kserve-validate:
	bash scripts/kserve-validate.sh
