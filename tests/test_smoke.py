def test_health_and_openapi(api):
    assert api.client.get("/healthz").status_code == 200
    spec = api.client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/patients/{patient_id}/record/{section}" in spec["paths"]
