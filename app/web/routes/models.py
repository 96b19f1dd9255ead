"""The model registry page: every version, its lineage, the disk its files take, and promotion."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.models import ModelVersion
from app.services import audit, registry, versions
from app.web.deps import AdminUser, SessionDep, verify_csrf
from app.web.input_guard import IdPath
from app.web.templating import render

router = APIRouter(prefix="/admin/models", tags=["models"], dependencies=[Depends(verify_csrf)])


@router.get("", include_in_schema=False)
def list_models(request: Request, session: SessionDep, user: AdminUser) -> Response:
    models = versions.list_versions(session)
    names = {m.id: m.name for m in models}
    sizes = registry.disk_usage(session, [m.id for m in models])
    total = sum(size for size in sizes.values() if size)
    return render(
        request, "runs/models.html", {"models": models, "names": names, "sizes": sizes, "total": total}
    )


@router.post("/{model_id}/promote", include_in_schema=False)
def promote_model(model_id: IdPath, session: SessionDep, user: AdminUser) -> Response:
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise HTTPException(404, "No such model version.")
    registry.promote(session, model=model)
    audit.record(session, audit.Actor.of(user, "web"), "model.promote", target=("model", model.name))
    return RedirectResponse("/admin/models", status_code=303)
