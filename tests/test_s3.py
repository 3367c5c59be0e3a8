"""The vector store on object storage: LanceDB on s3:// against a real S3-compatible server on loopback
(moto's server mode), through the normal pipeline and retrieval."""

from __future__ import annotations

import uuid

import boto3
import pytest
from conftest import TINY_DOCUMENTS
from moto.server import ThreadedMotoServer

from mdp.config import MdpConfig, SourceConfig
from mdp.retrieval import Retriever
from mdp.stages import run_ingest
from mdp.store import VectorStore


@pytest.fixture()
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="mdp",
        aws_secret_access_key="mdp",
        region_name="us-east-1",
    ).create_bucket(Bucket="mdp-index")
    yield endpoint
    server.stop()


def test_pipeline_indexes_into_s3_and_reads_back(s3_endpoint, tiny_corpus, encoder, monkeypatch):
    monkeypatch.setenv("MDP_TEST_S3_SECRET", "mdp")
    config = MdpConfig(sources=[SourceConfig(name="tiny", root=tiny_corpus)])
    config.parsing.workers = 2
    # unique per run: a remote store's search base is cached locally under its URI
    config.store.uri = f"s3://mdp-index/stores/tiny-{uuid.uuid4().hex[:8]}"
    config.store.storage_options = {
        "aws_access_key_id": "mdp",
        "aws_secret_access_key": "${MDP_TEST_S3_SECRET}",  # read from the environment
        "aws_endpoint": s3_endpoint,
        "aws_region": "us-east-1",
        "allow_http": "true",
    }
    first = run_ingest(config, encoder=encoder).as_dict()
    assert first["discovered"] == TINY_DOCUMENTS
    assert first["embedded"] == first["chunks"] > 0

    store = VectorStore.from_config(config.store, read_only=True)
    assert store.count_chunks() == first["chunks"]
    hits = Retriever(store, encoder).search("which fruit is rich in potassium", strategy="hybrid", k=3)
    assert hits[0].document_id == "tiny:notes.txt"

    again = run_ingest(config, encoder=encoder).as_dict()
    assert again["embedded"] == 0 and again["index_version"] == first["index_version"]

    # The objects really are in the bucket.
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="mdp",
        aws_secret_access_key="mdp",
        region_name="us-east-1",
    )
    prefix = config.store.uri.removeprefix("s3://mdp-index/") + "/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mdp-index", Prefix=prefix)["Contents"]]
    assert any("/chunks.lance/" in k for k in keys)
