"""Model evaluation for admins: the version leaderboard, length bias, evaluate and judge results."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.deps import verify_csrf

router = APIRouter(prefix="/admin", tags=["evaluation"], dependencies=[Depends(verify_csrf)])
