from common.migrations import run_env
from running.models import Base

run_env(Base.metadata)
