"""Seed the compose stack's MLflow server: registered model `chat` with versions 1 and 2 (each
from a finished run with parameters, a metric and a code commit), served by the mock upstreams,
and `champion` → 1. Idempotent: does nothing when `chat` already has versions."""

import sys

import mlflow
from mlflow.exceptions import MlflowException

VERSIONS = [
    ("http://mock-v1:9001/v1", "llama-3.1-8b-instruct", "0.0003", 0.41, "3f2a9c1"),
    ("http://mock-v2:9001/v1", "llama-3.1-8b-instruct-ft2", "0.0001", 0.37, "8b7e0d4"),
]


def main(uri: str) -> None:
    client = mlflow.MlflowClient(uri)
    try:
        client.create_registered_model("chat", description="chat model (compose demo)")
    except MlflowException:
        if client.search_model_versions("name='chat'"):
            return
    experiment = client.get_experiment_by_name("chat-finetune")
    exp_id = experiment.experiment_id if experiment else client.create_experiment("chat-finetune")
    for url, upstream_model, lr, loss, commit in VERSIONS:
        run = client.create_run(exp_id, tags={"mlflow.source.git.commit": commit})
        client.log_param(run.info.run_id, "learning_rate", lr)
        client.log_metric(run.info.run_id, "eval_loss", loss)
        client.set_terminated(run.info.run_id)
        client.create_model_version(
            "chat",
            f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            tags={"serving_url": url, "upstream_model": upstream_model},
        )
    client.set_registered_model_alias("chat", "champion", "1")


if __name__ == "__main__":
    main(sys.argv[1])
