from common.migrations import run_env
from helper.models import Base

run_env(Base.metadata)
