"""A secret in a flow's path parameter (an event's ``only``, ``data``, ``out``...) is refused by the
Prefect API before the run, and its parameters, are stored (issue #21)."""

import pytest
from prefect.utilities.schema_tools.validation import ValidationError, validate

from flows.credentials import LOCATION_PARAMETERS
from flows.serve import deployments
from seqae.errors import SeqaeError

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CARRYING = [f"s3://AKIA:{SECRET}@bucket/data/a.parquet", f"s3://bucket/data/a.parquet#secret_key={SECRET}",
            f"s3://bucket/data/a.parquet?session_token={SECRET}"]


@pytest.mark.parametrize("value", CARRYING)
def test_every_served_deployment_refuses_credentials_in_its_location_parameters(value):
    for deployment in deployments("data/", "models/", "out/"):
        assert deployment.enforce_parameter_schema, deployment.name
        schema = deployment._parameter_openapi_schema.model_dump()
        names = [name for name in LOCATION_PARAMETERS if name in schema["properties"]]
        assert names, deployment.name
        validate({**deployment.parameters}, schema, raise_on_error=True, ignore_required=True)
        for name in names:
            with pytest.raises(ValidationError):
                validate({**deployment.parameters, name: value}, schema, raise_on_error=True, ignore_required=True)


def test_the_event_path_of_embed_on_arrival_passes_when_it_carries_none():
    (deployment,) = [d for d in deployments("data/", "models/", "out/") if d.name == "embed-on-arrival"]
    schema = deployment._parameter_openapi_schema.model_dump()
    for only in ("/srv/data/part-0.parquet", "s3://bucket/data/part-0.parquet", None):
        validate({**deployment.parameters, "only": only}, schema, raise_on_error=True, ignore_required=True)


@pytest.mark.parametrize("data, models, out, line", [
    (f"s3://AKIA:{SECRET}@bucket/d", "models/", "out/", "s3://***@bucket/d: credentials in a URI are refused"),
    ("data/", "models/", f"s3://b/o#token={SECRET}", "s3://b/o#token=***: credentials in a URI are refused"),
    ("data/", f"s3://bucket/models?secret_key={SECRET}", "out/",
     "s3://bucket/models?secret_key=***: credentials in a URI are refused"),
])
def test_serve_refuses_credentials_before_any_deployment(data, models, out, line):
    with pytest.raises(SeqaeError) as caught:
        deployments(data, models, out)
    assert str(caught.value).startswith(line) and SECRET not in str(caught.value)


def test_serve_takes_a_registry_uri():  # the model lifecycle runs on object stores (issue #26)
    assert {d.name for d in deployments("data/", "s3://bucket/models", "out/")} >= {"retrain", "embed-on-promotion"}


@pytest.mark.slow
def test_the_api_refuses_to_create_the_run_so_the_secret_is_never_a_parameter(prefect_harness, tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    (deployment,) = [d for d in deployments(str(tmp_path / "d"), str(tmp_path / "m"), str(tmp_path / "o"))
                     if d.name == "embed-on-arrival"]
    deployment_id = deployment.apply()

    async def create(only):
        async with get_client() as client:
            return await client.create_flow_run_from_deployment(deployment_id, parameters={"only": only})

    for only in CARRYING:
        with pytest.raises(PrefectHTTPStatusError) as caught:
            asyncio.run(create(only))
        assert caught.value.response.status_code == 409

    async def stored():
        async with get_client() as client:
            return [run.parameters for run in await client.read_flow_runs()]

    assert SECRET not in repr(asyncio.run(stored()))
    run = asyncio.run(create(str(tmp_path / "d" / "a.parquet")))  # a clean path still makes a run
    assert run.parameters["only"] == str(tmp_path / "d" / "a.parquet")
