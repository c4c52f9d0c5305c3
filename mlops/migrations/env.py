from common.migrations import run_env
from mlops.models import Base

run_env(Base.metadata)
