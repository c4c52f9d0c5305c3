from common.migrations import run_env
from notification.models import Base

run_env(Base.metadata)
