from fomo_nn.plans.records import (FUSION_MODES, NetworkPlan, NormalizationPlan, Plans, StoragePlan, TrainingPlan,
                                   load_plans, save_plans)

__all__ = ["FUSION_MODES", "NetworkPlan", "NormalizationPlan", "Plans", "StoragePlan", "TrainingPlan", "load_plans",
           "save_plans"]
