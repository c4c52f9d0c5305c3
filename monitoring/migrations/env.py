from common.migrations import run_env
from monitoring.models import Base

run_env(Base.metadata)
