//! Join material: the certificate key a control-plane join needs. It lives
//! two hours, so it is uploaded once before the joins and again before any
//! join that could outlive it.

use super::{CERTIFICATE_KEY_MARGIN, CERTIFICATE_KEY_TTL, Ctx, Phase, Step, step};
use crate::backend::{CpOp, Op};
use crate::units::Dur;

/// The join-material phase, when there is a master to join.
pub(super) fn phase(ctx: &Ctx<'_>) -> Option<Phase> {
    (!ctx.new_masters.is_empty()).then(|| Phase {
        id: "join-material".into(),
        title: "Join material".into(),
        steps: vec![upload("join-material/upload-certs")],
    })
}

/// `kubeadm init phase upload-certs`: a fresh key.
pub(super) fn upload(id: &str) -> Step {
    let mut s = step(
        id,
        "upload control-plane certificates: a fresh certificate key, valid 2h".to_string(),
        Op::ControlPlane(CpOp::UploadCerts),
        Dur::secs(30),
    );
    s.notes
        .push("the kubeadm-certs Secret and its key expire 2 hours after upload".into());
    s
}

/// How old a key may be when a step that needs it starts, so that it
/// still has the margin left when the step ends.
pub(super) fn budget() -> jiff::SignedDuration {
    CERTIFICATE_KEY_TTL.0 - CERTIFICATE_KEY_MARGIN.0
}
