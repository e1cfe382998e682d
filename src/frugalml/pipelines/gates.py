"""A data-quality gate as two nodes (validate, then enforce), reused in front of every stage that needs one."""

from kedro.pipeline import Node

from frugalml.nodes.quality import enforce_quality_gate, validate_with_suite


def quality_gate(*, batch: str, suite: str, name: str, output: str) -> list[Node]:
    """The nodes of one gate.

    Catalog entries it uses, for ``name`` = N: ``N_gate_quarantine``, ``N_gate_report``, ``N_gate_metrics``,
    ``N_gate_data_docs`` (saved even when the gate stops the run) and ``N_gate_passed`` (in memory).

    Args:
        batch: The dataset to check.
        suite: The catalog entry of its expectation suite.
        name: The gate's name (prefix of its datasets and nodes).
        output: Where the clean rows go when the gate passes.

    Returns:
        The validate and enforce nodes.
    """
    return [
        Node(
            func=validate_with_suite,
            inputs=[batch, suite, "params:quality", "params:data"],
            outputs=[
                f"{name}_gate_passed",
                f"{name}_gate_quarantine",
                f"{name}_gate_report",
                f"{name}_gate_metrics",
                f"{name}_gate_data_docs",
            ],
            name=f"validate_{name}_node",
        ),  # fmt: skip
        Node(
            func=enforce_quality_gate,
            inputs=[f"{name}_gate_passed", f"{name}_gate_report"],
            outputs=output,
            name=f"enforce_{name}_gate_node",
        ),
    ]
