"""SavedModelMLflowCallback against real ``mlflow server`` processes on 127.0.0.1, and the environment.

Servers are shared per module because each one takes seconds to start. Every test makes its own
experiment or run, so tests do not see each other's results.
"""

from __future__ import annotations

import logging
import os

import mlflow
import numpy as np
import pytest

import models
import servers
from keras_mlflow_savedmodel import SavedModelMLflowCallback, TrackingStoreError
from keras_mlflow_savedmodel.errors import TrackingServerError
from keras_mlflow_savedmodel.remote import HTTP_MAX_RETRIES_ENV, HTTP_TIMEOUT_ENV
from reload import predict_in_fresh_process

pytestmark = pytest.mark.slow

SECRET = "uri-secret-Zq81"
CALLBACK_LOGGER = "keras_mlflow_savedmodel"


def start_server(tmp_path_factory, mode):
    server = servers.start_mlflow_server(tmp_path_factory.mktemp(mode), mode=mode)
    return server


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory):
    server = start_server(tmp_path_factory, "serve-artifacts")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def artifact_root_server(tmp_path_factory):
    server = start_server(tmp_path_factory, "artifact-root")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    server = start_server(tmp_path_factory, "basic-auth")
    yield server
    server.stop()


@pytest.fixture
def admin_credentials(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", servers.ADMIN_USERNAME)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", servers.ADMIN_PASSWORD)


def fit(callback, epochs=2):
    model = models.sequential_model()
    x, y = models.make_data(rows=32)
    model.fit(x, y, epochs=epochs, batch_size=16, callbacks=[callback], verbose=0)
    return model, x


def download_model(callback, tmp_path):
    return mlflow.artifacts.download_artifacts(
        artifact_uri=callback.model_uri, dst_path=str(tmp_path / "download"), tracking_uri=callback.tracking_uri
    )


def url_with_credentials(server, username, password):
    return server.url.replace("http://", f"http://{username}:{password}@")


def test_proxied_artifacts_reload_in_fresh_process(proxied_server, tmp_path):
    callback = SavedModelMLflowCallback(proxied_server.url, experiment_name="proxied")
    model, x = fit(callback)

    run = mlflow.MlflowClient(proxied_server.url).get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    folder = download_model(callback, tmp_path)
    outputs = predict_in_fresh_process(folder, x, tmp_path)
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=1e-5)


def test_proxied_artifacts_stored_by_server(proxied_server):
    callback = SavedModelMLflowCallback(proxied_server.url, experiment_name="proxied-files")
    fit(callback)

    server_artifacts = proxied_server.log_path.parent / "artifacts"
    found = [root for root, _, files in os.walk(server_artifacts) if "saved_model.pb" in files]
    assert any(callback.run_id in root for root in found)


def test_artifact_root_reload_in_fresh_process(artifact_root_server, tmp_path):
    callback = SavedModelMLflowCallback(artifact_root_server.url, experiment_name="artifact-root")
    model, x = fit(callback)

    run = mlflow.MlflowClient(artifact_root_server.url).get_run(callback.run_id)
    server_artifacts = str(artifact_root_server.log_path.parent / "artifacts")
    assert run.info.artifact_uri.startswith(server_artifacts)
    folder = download_model(callback, tmp_path)
    outputs = predict_in_fresh_process(folder, x, tmp_path)
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=1e-5)


def test_basic_auth_environment_credentials(auth_server, admin_credentials, tmp_path):
    callback = SavedModelMLflowCallback(auth_server.url, experiment_name="auth-env")
    fit(callback)

    run = mlflow.MlflowClient(auth_server.url).get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert os.path.isfile(os.path.join(download_model(callback, tmp_path), "saved_model.pb"))


def test_basic_auth_wrong_password_rejected(auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", servers.ADMIN_USERNAME)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)

    with pytest.raises(TrackingServerError) as raised:
        SavedModelMLflowCallback(auth_server.url, experiment_name="auth-wrong")

    assert raised.value.status_code == 401
    assert auth_server.url in str(raised.value)
    assert "MLFLOW_TRACKING_PASSWORD" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_basic_auth_missing_credentials_rejected(auth_server):
    with pytest.raises(TrackingServerError) as raised:
        SavedModelMLflowCallback(auth_server.url, experiment_name="auth-none")

    assert raised.value.status_code == 401
    assert "no credentials were sent" in str(raised.value)


def test_uri_credentials_never_shown(auth_server, caplog, capfd):
    uri = url_with_credentials(auth_server, servers.ADMIN_USERNAME, servers.ADMIN_PASSWORD)
    caplog.set_level(logging.DEBUG)
    callback = SavedModelMLflowCallback(uri, experiment_name="auth-uri")
    fit(callback)

    run = mlflow.MlflowClient(uri).get_run(callback.run_id)
    captured = capfd.readouterr()
    assert run.info.status == "FINISHED"
    assert "admin:***@127.0.0.1" in caplog.text
    assert servers.ADMIN_PASSWORD not in caplog.text
    assert servers.ADMIN_PASSWORD not in captured.out + captured.err
    assert servers.ADMIN_PASSWORD not in callback.ui_command
    assert servers.ADMIN_PASSWORD not in repr(run.data.params) + repr(run.data.tags)


def test_uri_wrong_password_not_shown(auth_server, caplog):
    uri = url_with_credentials(auth_server, servers.ADMIN_USERNAME, SECRET)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(TrackingServerError) as raised:
        SavedModelMLflowCallback(uri, experiment_name="auth-uri-wrong")

    assert raised.value.status_code == 401
    assert "admin:***@127.0.0.1" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert SECRET not in caplog.text


def test_unreachable_server_fails_at_creation(caplog):
    uri = f"http://{servers.ADMIN_USERNAME}:{SECRET}@127.0.0.1:{servers.free_port()}"
    caplog.set_level(logging.DEBUG)

    with pytest.raises(TrackingServerError) as raised:
        SavedModelMLflowCallback(uri)

    message = str(raised.value)
    assert raised.value.status_code is None
    assert uri.replace(SECRET, "***") in message
    assert "Connection refused" in message
    assert "10 s timeout per attempt, 2 retries" in message
    assert HTTP_TIMEOUT_ENV in message
    assert HTTP_MAX_RETRIES_ENV in message
    assert SECRET not in message
    assert SECRET not in caplog.text


def test_unreachable_server_limits_from_environment(monkeypatch):
    monkeypatch.setenv(HTTP_TIMEOUT_ENV, "3")
    monkeypatch.setenv(HTTP_MAX_RETRIES_ENV, "0")

    with pytest.raises(TrackingServerError) as raised:
        SavedModelMLflowCallback(f"http://127.0.0.1:{servers.free_port()}")

    assert "3 s timeout per attempt, 0 retries" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [(HTTP_TIMEOUT_ENV, "soon"), (HTTP_TIMEOUT_ENV, "0"), (HTTP_MAX_RETRIES_ENV, "-1")],
)
def test_invalid_limit_environment_rejected(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(TrackingStoreError, match=name) as raised:
        SavedModelMLflowCallback(f"http://127.0.0.1:{servers.free_port()}")

    assert raised.value.value == value


# Environment variables: used when the argument is not given, and named in the INFO line.


def train_begin_line(caplog):
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Logging to MLflow run")]
    assert len(lines) == 1, caplog.text
    return lines[0]


def test_tracking_uri_from_environment(proxied_server, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxied_server.url)
    caplog.set_level(logging.INFO, logger=CALLBACK_LOGGER)
    callback = SavedModelMLflowCallback(experiment_name="from-env")
    fit(callback, epochs=1)

    assert callback.tracking_uri == proxied_server.url
    assert mlflow.MlflowClient(proxied_server.url).get_run(callback.run_id).info.status == "FINISHED"
    assert f"of the store {proxied_server.url} (from environment variable MLFLOW_TRACKING_URI)" in train_begin_line(caplog)


def test_tracking_uri_argument_wins(proxied_server, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxied_server.url)
    caplog.set_level(logging.INFO, logger=CALLBACK_LOGGER)
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    fit(callback, epochs=1)

    assert callback.tracking_uri.startswith("sqlite:///")
    assert "(from tracking_uri argument)" in train_begin_line(caplog)


def test_experiment_name_from_environment(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "named-by-env")
    caplog.set_level(logging.INFO, logger=CALLBACK_LOGGER)
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    fit(callback, epochs=1)

    client = mlflow.MlflowClient(callback.tracking_uri)
    experiment = client.get_experiment(client.get_run(callback.run_id).info.experiment_id)
    assert experiment.name == "named-by-env"
    assert "in experiment 'named-by-env' (from environment variable MLFLOW_EXPERIMENT_NAME)" in train_begin_line(caplog)


def test_experiment_id_from_environment(monkeypatch, caplog, tmp_path):
    store = str(tmp_path / "store")
    experiment_id = mlflow.MlflowClient(SavedModelMLflowCallback(store).tracking_uri).create_experiment("by-id")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "loses-to-id")
    caplog.set_level(logging.INFO, logger=CALLBACK_LOGGER)
    callback = SavedModelMLflowCallback(store)
    fit(callback, epochs=1)

    client = mlflow.MlflowClient(callback.tracking_uri)
    assert client.get_run(callback.run_id).info.experiment_id == experiment_id
    assert "in experiment 'by-id' (from environment variable MLFLOW_EXPERIMENT_ID)" in train_begin_line(caplog)


def test_experiment_name_argument_wins(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "loses-to-argument")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    caplog.set_level(logging.INFO, logger=CALLBACK_LOGGER)
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), experiment_name="from-argument")
    fit(callback, epochs=1)

    client = mlflow.MlflowClient(callback.tracking_uri)
    experiment = client.get_experiment(client.get_run(callback.run_id).info.experiment_id)
    assert experiment.name == "from-argument"
    assert "in experiment 'from-argument' (from experiment_name argument)" in train_begin_line(caplog)
