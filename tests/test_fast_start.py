"""`import ivgf_hf` and `ivgf --help` import nothing heavy; the pipelines register when transformers' pipelines load."""

import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "transformers", "numpy", "PIL", "huggingface_hub")


def run_python(code: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_ivgf_help_imports_no_heavy_package():
    out = run_python(
        f"""
        import contextlib, io, sys
        from ivgf_hf.cli import main
        help_text = io.StringIO()
        with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
            main(["--help"])
        assert "usage: ivgf" in help_text.getvalue()
        print(sorted(name for name in {HEAVY!r} if name in sys.modules))
        """
    )
    assert out.strip() == "[]"


@pytest.mark.parametrize("command", ["train", "eval", "predict", "hub", "convert", "quickstart", "benchmark"])
def test_every_subcommand_help_imports_no_heavy_package(command):
    out = run_python(
        f"""
        import contextlib, io, sys
        from ivgf_hf.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main([{command!r}, "--help"])
        print(sorted(name for name in {HEAVY!r} if name in sys.modules))
        """
    )
    assert out.strip() == "[]"


@pytest.mark.slow
def test_package_attributes_load_on_first_use():
    out = run_python(
        """
        import sys
        import ivgf_hf
        assert "torch" not in sys.modules
        assert ivgf_hf.get_config("tiny").model_type == "ivgf"
        assert ivgf_hf.IVGFForSemanticSegmentation.__module__ == "ivgf_hf.modeling.modeling_ivgf"
        try:
            ivgf_hf.no_such_name
        except AttributeError as error:
            print(error)
        """
    )
    assert "has no attribute 'no_such_name'" in out


@pytest.mark.parametrize(
    "first, then",
    [
        ("import ivgf_hf", "from transformers import pipeline"),  # the hook registers on import
        ("from transformers import pipeline", "import ivgf_hf"),  # already imported: registers at once
        ("import ivgf_hf", "from ivgf_hf.modeling import pipeline_ivgf"),  # pipeline module imports transformers'
    ],
)
@pytest.mark.slow
def test_pipelines_register_in_any_import_order(first, then):
    out = run_python(
        f"""
        {first}
        {then}
        import transformers
        from transformers.pipelines import PIPELINE_REGISTRY
        from ivgf_hf.modeling.configuration_ivgf import IVGFConfig
        tasks = PIPELINE_REGISTRY.supported_tasks
        print(tasks["rgbt-semantic-segmentation"]["impl"].__name__, tasks["rgbt-object-detection"]["impl"].__name__)
        print(transformers.AutoConfig.for_model("ivgf").__class__ is IVGFConfig)
        """
    )
    assert out.split() == ["IVGFSemanticSegmentationPipeline", "IVGFObjectDetectionPipeline", "True"]
