"""Label quality for admins: rater reliability, agreement, gold accuracy, disputed pairs."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.deps import verify_csrf

router = APIRouter(prefix="/admin", tags=["quality"], dependencies=[Depends(verify_csrf)])
