# Custom SDK container for Dataflow (and Spark/Flink with --environment_type DOCKER): the Beam 2.77 Python 3.11
# worker image with wudao-corpora and its dependencies (models, samples and recipes ship as package data).
#   docker build -t REGISTRY/wudao:0.1.0 . && docker push REGISTRY/wudao:0.1.0
#   wudao text ... --runner DataflowRunner --sdk_container_image REGISTRY/wudao:0.1.0
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/wudao
COPY pyproject.toml setup.py README.md LICENSE ./
COPY pipelines ./pipelines
COPY cleaners ./cleaners
COPY tokenizer ./tokenizer
COPY shards ./shards
COPY train ./train
# no [train]/[test] extras: workers never need torch; gcp extras for gs:// paths and Dataflow's worker harness
RUN pip install --no-cache-dir . "apache-beam[gcp]==2.77.0" && python -c "import pipelines.cli, cleaners"

# glibc malloc settings that keep a long-running worker's memory flat (pipelines/memory.py)
ENV MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=65536

# the base image's entrypoint (/opt/apache/beam/boot) starts the SDK harness; keep it
