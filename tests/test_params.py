"""params.yaml sections: typos are errors, missing sections are never silent."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fomm_core.errors import FommError
from fomm_core.model_config import ModelConfig
from pipeline.cli import app
from pipeline.params import KNOWN_SECTIONS, load_section

PROJECT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_the_project_params_use_only_known_sections():
    import yaml

    assert set(yaml.safe_load(PROJECT_PARAMS.read_text())) <= set(KNOWN_SECTIONS)


def test_misspelled_section_is_an_error_with_a_suggestion(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("modle:\n  num_kp: 5\n")
    with pytest.raises(FommError, match="unknown section 'modle'; did you mean 'model'"):
        load_section(params, "model", ModelConfig)


def test_missing_section_prints_a_note_and_uses_defaults(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  epochs: 1\n")
    config = load_section(params, "model", ModelConfig)
    assert config == ModelConfig()
    assert "has no `model:` section; using the built-in defaults" in capsys.readouterr().out


def test_train_with_a_misspelled_section_stops_before_training(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(PROJECT_PARAMS.read_text().replace("\nmodel:\n", "\nmodle:\n"))
    result = CliRunner().invoke(app, ["train", "--params", str(params), "--shards", str(tmp_path / "none"),
                                      "--out", str(tmp_path / "train"), "--no-mlflow"])
    assert result.exit_code == 2
    assert "unknown section 'modle'; did you mean 'model'?" in result.output
    assert not (tmp_path / "train").exists()
