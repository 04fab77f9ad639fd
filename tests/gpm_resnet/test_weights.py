"""The weights registry: names, checksums, astropy's download cache, a localhost server."""

import http.server
import json
import threading

import pytest

from gpm_astro import weights
from gpm_astro.exceptions import ParameterError, WeightsError
from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

from .conftest import make_galaxies


class _Server:
    """Serves ``files`` (name -> bytes) on localhost and counts GET requests per path."""

    def __init__(self, files):
        self.files = files
        self.hits = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/")
                server.hits[name] = server.hits.get(name, 0) + 1
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def temp_cache(tmp_path):
    from astropy.config import paths

    with paths.set_temp_cache(tmp_path / "astropy-cache"):
        yield


@pytest.fixture
def cleanup_names():
    names = []
    yield names
    for name in names:
        weights.unregister_weights(name)


def test_local_file_with_checksum(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"some weights")
    sha = weights.sha256_of(path)
    assert weights.fetch_weights(str(path), sha256=sha) == str(path)
    assert weights.fetch_weights(path.as_uri(), sha256=sha) == str(path)
    with pytest.raises(WeightsError, match="tampered"):
        weights.fetch_weights(str(path), sha256="0" * 64)
    with pytest.raises(WeightsError, match="needs sha256"):
        weights.fetch_weights(str(path))
    with pytest.raises(WeightsError, match="does not exist"):
        weights.fetch_weights(str(tmp_path / "absent.bin"), sha256=sha)


def test_a_missing_path_is_said_to_be_missing_not_an_unknown_name(tmp_path):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    for missing in (tmp_path / "model", tmp_path / "model.safetensors", "model.safetensors"):
        with pytest.raises(WeightsError, match=f"weights file or folder '{missing}' does not "
                                               f"exist.*known: .*gpm_resnet_lite_mock"):
            GPMResNetEstimator.load(missing)
    # a bare word is still read as a name
    with pytest.raises(WeightsError, match="no weights named 'absent'; known"):
        GPMResNetEstimator.load("absent")


def test_register_and_list(tmp_path, cleanup_names):
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    weights.register_weights("local-test", url=str(path), sha256=weights.sha256_of(path),
                             description="test")
    cleanup_names.append("local-test")
    assert weights.fetch_weights("local-test") == str(path)
    table = weights.list_weights()
    assert "local-test" in list(table["name"])
    with pytest.raises(ParameterError, match="already registered"):
        weights.register_weights("local-test", url=str(path), sha256="1" * 64)
    with pytest.raises(ParameterError, match="'xyz'"):
        weights.register_weights("bad", url=str(path), sha256="xyz")
    with pytest.raises(WeightsError, match="known: .*local-test"):
        weights.fetch_weights("missing-name")


def test_registry_json_from_environment(tmp_path, monkeypatch):
    (tmp_path / "w.bin").write_bytes(b"env weights")
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"env-model": {
        "url": "w.bin", "sha256": weights.sha256_of(tmp_path / "w.bin")}}))
    monkeypatch.setenv(weights.WEIGHTS_ENV_VAR, str(registry))
    assert weights.fetch_weights("env-model") == str((tmp_path / "w.bin").resolve())
    registry.write_text(json.dumps({"broken": {"url": "w.bin"}}))
    with pytest.raises(WeightsError, match="'broken'"):
        weights.list_weights()


def test_download_once_into_cache_and_refuse_bad_checksum(temp_cache, cleanup_names):
    good, bad = b"x" * 5000, b"y" * 5000
    with _Server({"good.bin": good, "bad.bin": bad}) as server:
        sha = __import__("hashlib").sha256(good).hexdigest()
        weights.register_weights("served", url=f"{server.url}/good.bin", sha256=sha)
        weights.register_weights("served-bad", url=f"{server.url}/bad.bin", sha256=sha)
        cleanup_names.extend(["served", "served-bad"])
        first = weights.fetch_weights("served")
        second = weights.fetch_weights("served")
        assert first == second and open(first, "rb").read() == good
        assert server.hits["good.bin"] == 1  # fetched once, then from astropy's cache
        with pytest.raises(WeightsError, match="expected"):
            weights.fetch_weights("served-bad")
        with pytest.raises(WeightsError, match="expected"):
            weights.fetch_weights("served-bad")
        assert server.hits["bad.bin"] == 2  # a refused file is not kept in the cache
        with pytest.raises(WeightsError, match="cannot download"):
            weights.fetch_weights(f"{server.url}/absent.bin", sha256=sha)


def test_estimator_loads_registered_weights_from_a_server(temp_cache, cleanup_names,
                                                          tmp_path):
    from gpm_astro_plugins.gpm_resnet.model import GPMResNetConfig

    config = GPMResNetConfig(width=0.125, blocks=(1, 1, 1, 1), epochs=1, batch_size=8,
                             head_hidden=8, standardize_target=True)
    table = make_galaxies(16, seed=3)
    estimator = GPMResNetEstimator(config=config, mc_passes=2, progress=False).fit(table)
    path = estimator.save(tmp_path / "model")
    with _Server({"model.safetensors": path.read_bytes()}) as server:
        weights.register_weights("served-model", url=f"{server.url}/model.safetensors",
                                 sha256=weights.sha256_of(path))
        cleanup_names.append("served-model")
        loaded = GPMResNetEstimator.load("served-model", progress=False)
        assert list(loaded.predict(table)["Z_pred"]) == list(estimator.predict(table)["Z_pred"])
        from gpm_astro import predict_metallicity

        out = predict_metallicity(table, estimator="gpm_resnet", weights="served-model",
                                  progress=False)
        assert list(out["Z_pred"]) == list(estimator.predict(table)["Z_pred"])
