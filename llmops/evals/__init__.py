"""Prompt test suites, the release gate (issue 10 section 2).

Pure: `suite` reads a suite from YAML, `assertions` judges one result of one case (an extension
point: interface, registry by type name, drivers), `scoring` turns judged results into case and
suite verdicts (pass@k, pass^k, flaky) and compares two prompt versions on the same cases,
`junit` writes the JUnit XML and JSON reports CI systems read.
IO, thin: `runner` sends the cases through the platform with the SDK (and measures what the
assertions read through probes its caller passes in: llmops/cli/evals.py wires the detectors,
the embeddings and the judge from the layers above), `store` writes the results to ClickHouse.
"""
