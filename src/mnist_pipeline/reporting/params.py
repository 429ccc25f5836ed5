"""``params.yaml``'s ``report`` section: what the report shows."""

from typing import Annotated

from pydantic import Field

from mnist_pipeline.core.params import Int, Section


class ReportParams(Section):
    n_images: Annotated[Int, Field(ge=1, le=100)] = 10  # test images in the prediction grid
