from common.migrations import run_env
from branch_owner.models import Base

run_env(Base.metadata)
