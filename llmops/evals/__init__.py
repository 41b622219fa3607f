"""Prompt test suites, the release gate (issue 10 section 2): the pure core.

`suite` reads a suite from YAML, `assertions` judges one result of one case (an extension point:
interface, registry by type name, drivers), `scoring` turns judged results into case and suite
verdicts (pass@k, pass^k, flaky) and compares two prompt versions on the same cases, `junit`
writes the JUnit XML and JSON reports CI systems read. No IO, no clock: the runner sends the
cases, measures the numbers and signals, and writes the files.
"""
