"""Package discovery: `src/frugalml` plus the top-level `kernels/` folder importable as `frugalml.kernels`."""

from setuptools import find_packages, setup

kernel_packages = ["frugalml.kernels"] + [
    f"frugalml.kernels.{name}" for name in find_packages("kernels")
]
package_dir = {"": "src", "frugalml.kernels": "kernels"}
package_dir.update({pkg: "kernels/" + pkg.split(".", 2)[2].replace(".", "/") for pkg in kernel_packages[1:]})

setup(
    packages=find_packages("src") + kernel_packages,
    package_dir=package_dir,
    package_data={"frugalml": ["py.typed"]},
)
