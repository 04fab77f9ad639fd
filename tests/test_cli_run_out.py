"""``gpm-astro run CONFIG`` writes where the configuration's output_dir says, or asks for one."""

from gpm_astro.cli import main
from pipeline_fakes import write_fake_sky


def _toml_source(source):
    return "\n".join(f'{key} = "{value}"' for key, value in source.items())


def test_run_uses_the_configuration_output_dir(tmp_path, monkeypatch, capsys):
    source = write_fake_sky(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "run.toml"
    config.write_text('output_dir = "from_config"\n[source]\n' + _toml_source(source)
                      + '\n[estimators.poly]\nestimator = "colour_polynomial"\n'
                      + '[application]\nestimator = "poly"\n')
    assert main(["run", str(config), "--until", "sky", "--quiet"]) == 0
    assert (tmp_path / "from_config/sky/images.fits").is_file()
    # --out wins over the file
    assert main(["run", str(config), "--until", "sky", "--quiet", "--out", "elsewhere"]) == 0
    assert (tmp_path / "elsewhere/sky/images.fits").is_file()


def test_run_without_any_output_folder_says_both_ways(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("[sample]\nn_bins = 5\n")
    assert main(["run", str(config)]) == 1
    err = capsys.readouterr().err
    assert "set output_dir in the configuration" in err and "--out DIR" in err


def test_a_malformed_source_param_names_that_option(tmp_path, capsys):
    assert main(["run", "--source", "mock", "--source-param", "n_galaxies", "--out",
                 str(tmp_path / "out")]) == 1
    assert "--source-param takes KEY=VALUE, got 'n_galaxies'" in capsys.readouterr().err
